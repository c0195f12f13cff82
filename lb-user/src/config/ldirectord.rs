//! ldirectord.cf (heartbeat's ldirectord, spec §8.1).
//!
//! Global `key = value` lines; a service starts with an unindented `virtual = ...` and its
//! directives follow indented. ldirectord itself refuses unindented service directives; lbd
//! takes an unindented directive that only exists inside a service (`real`, `request`,
//! `scheduler`, ...) as part of the service above it, with a warning (configurations copied
//! from web pages often lost their indentation). Globals apply to every service that does not
//! set its own value, wherever in the file they stand.
//!
//! IPv6 as ldirectord 4.12 reads it: `virtual6 = [addr]:port` (or a host name, or a fwmark) with
//! `real6 = [addr][:port] ...` and `fallback6` (in the section or global); `real`/`fallback` in a
//! `virtual6` section, `real6`/`fallback6` in a `virtual` one, and an IPv6 address after
//! `virtual =` are errors in ldirectord's words; IPv6 ranges are refused as ldirectord does;
//! `netmask` of an IPv6 section is a prefix length.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::{Check, CheckKind, DesiredConfig, Diag, HttpCheck, RealServer, TlsCheck, VirtualService};
use super::{parse_ip, parse_secs, parse_v4_mask, port_by_name};
use crate::ctl::{DestSpec, ServiceSpec};
use crate::model::{Af, Fwd, Proto, SvcKey, Tunnel};

/// Directives that only exist inside a virtual section.
const VIRTUAL_ONLY: &[&str] = &[
    "real",
    "real6",
    "service",
    "checkport",
    "request",
    "receive",
    "httpmethod",
    "virtualhost",
    "scheduler",
    "persistent",
    "netmask",
    "protocol",
    "checktype",
    "login",
    "passwd",
    "database",
    "secret",
    "ops",
    "monitorfile",
    "checkcommand",
];

/// Directives valid globally and per virtual (the virtual's value wins).
const SHARED: &[&str] = &[
    "checktimeout",
    "negotiatetimeout",
    "connecttimeout",
    "checkinterval",
    "failurecount",
    "quiescent",
    "fallback",
    "fallback6",
    "cleanstop",
];

/// Global-only directives lbd honours or that do not change what it does.
const GLOBAL_ONLY: &[&str] = &["autoreload", "logfile", "fork", "supervised", "readdquiescent"];

/// Directives of ldirectord that need something lbd does not do.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("emailalert", "lbd sends no e-mail alerts (watch the metrics endpoint instead)"),
    ("emailalertfreq", "lbd sends no e-mail alerts"),
    ("emailalertstatus", "lbd sends no e-mail alerts"),
    ("emailalertfrom", "lbd sends no e-mail alerts"),
    ("smtp", "lbd sends no e-mail alerts"),
    ("callback", "lbd runs no callback command"),
    ("fallbackcommand", "lbd runs no fallback command (use `fallback`)"),
    ("maintenancedir", "lbd has no maintenance directory"),
    ("checkcount", "`checkcount` is deprecated; use `failurecount`"),
];

#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    key: String,
    value: String,
}

struct Section {
    line: usize,
    v6: bool,
    value: String,
    entries: Vec<Entry>,
}

/// Removes a comment: `#` at the start or after blank space, outside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes && prev_blank => return &line[..i],
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    line
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    s.to_string()
}

/// Splits on blanks, keeping double-quoted words together (quotes and a trailing comma go).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if !cur.is_empty() || quoted {
                    out.push(std::mem::take(&mut cur));
                }
                quoted = false;
            }
            ',' if !in_quotes && quoted => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || quoted {
        out.push(cur);
    }
    out
}

pub fn parse(text: &str) -> Result<DesiredConfig, Vec<Diag>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut globals: HashMap<String, Entry> = HashMap::new();
    let mut sections: Vec<Section> = Vec::new();
    // Whether the last directive line belonged to a section (for unindented service lines).
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.replace('\t', "    ");
        let l = l.trim_end_matches('\r');
        let l = strip_comment(l);
        if l.trim().is_empty() {
            continue;
        }
        // Any blank counts (pages often carry no-break spaces, as seed 001 does).
        let indented = l.chars().next().is_some_and(char::is_whitespace);
        let Some((key, value)) = l.split_once('=') else {
            errors.push(Diag { line, msg: format!("expected `directive = value`, found `{}`", l.trim()) });
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let e = Entry { line, key: key.clone(), value: value.trim().to_string() };
        if key == "virtual" || key == "virtual6" {
            if indented {
                errors.push(Diag { line, msg: "`virtual` must not be indented".into() });
            }
            sections.push(Section { line, v6: key == "virtual6", value: unquote(&e.value), entries: Vec::new() });
            continue;
        }
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
            errors.push(Diag { line, msg: format!("`{key}` cannot be honoured: {why}") });
            continue;
        }
        let known_virtual = VIRTUAL_ONLY.contains(&key.as_str()) || SHARED.contains(&key.as_str());
        let known_global = GLOBAL_ONLY.contains(&key.as_str()) || SHARED.contains(&key.as_str());
        if indented {
            match sections.last_mut() {
                Some(s) if known_virtual => s.entries.push(e),
                Some(_) if known_global => {
                    errors.push(Diag { line, msg: format!("`{key}` is a global directive: it must not be indented") })
                }
                Some(_) => errors.push(Diag { line, msg: format!("unknown directive `{key}`") }),
                None => errors.push(Diag { line, msg: format!("`{key}` is indented but no `virtual` section is open") }),
            }
            continue;
        }
        if VIRTUAL_ONLY.contains(&key.as_str()) {
            match sections.last_mut() {
                Some(s) => {
                    warnings.push(Diag {
                        line,
                        msg: format!("`{key}` is not indented: taken as part of the virtual service of line {}", s.line),
                    });
                    s.entries.push(e);
                }
                None => errors.push(Diag { line, msg: format!("`{key}` is only valid inside a `virtual` section") }),
            }
            continue;
        }
        if !known_global {
            errors.push(Diag { line, msg: format!("unknown directive `{key}`") });
            continue;
        }
        if let Some(prev) = globals.get(&key) {
            warnings.push(Diag { line, msg: format!("`{key}` set again (line {} is overridden)", prev.line) });
        }
        globals.insert(key, e);
    }

    let g = Scope { entries: globals.values().cloned().collect() };
    let mut cfg = DesiredConfig::default();
    match g.bool("autoreload", false) {
        Ok(b) => cfg.autoreload = b,
        Err(d) => errors.push(d),
    }
    if let Some(e) = g.get("logfile") {
        let v = unquote(&e.value);
        if v.starts_with('/') {
            cfg.logfile = Some(PathBuf::from(v));
        } else {
            warnings.push(Diag { line: e.line, msg: format!("logfile `{v}`: a syslog facility: lbd logs to the journal under systemd, else to stderr") });
        }
    }
    for s in &sections {
        match section(s, &g) {
            Ok(v) => {
                // ldirectord's `cleanstop` (default yes): the service goes when lbd stops.
                let local = Scope { entries: s.entries.clone() };
                match (Layered { local: &local, global: &g }).bool("cleanstop", true) {
                    Ok(true) => cfg.cleanstop.push(v.spec.key),
                    Ok(false) => {}
                    Err(d) => errors.push(d),
                }
                cfg.services.push(v);
            }
            Err(mut d) => errors.append(&mut d),
        }
    }
    super::finish(cfg, warnings, errors)
}

struct Scope {
    entries: Vec<Entry>,
}

impl Scope {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, Diag> {
        match self.get(key) {
            None => Ok(default),
            Some(e) => match unquote(&e.value).to_ascii_lowercase().as_str() {
                "yes" | "y" | "true" | "on" | "1" => Ok(true),
                "no" | "n" | "false" | "off" | "0" => Ok(false),
                v => Err(Diag { line: e.line, msg: format!("`{key}` must be yes or no, not `{v}`") }),
            },
        }
    }

    fn secs(&self, key: &str) -> Result<Option<Duration>, Diag> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => parse_secs(&unquote(&e.value))
                .map(Some)
                .ok_or_else(|| Diag { line: e.line, msg: format!("`{key}` must be a positive number of seconds") }),
        }
    }
}

/// A value of the section, else of the globals.
struct Layered<'a> {
    local: &'a Scope,
    global: &'a Scope,
}

impl Layered<'_> {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.local.get(key).or_else(|| self.global.get(key))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, Diag> {
        if self.local.get(key).is_some() { self.local.bool(key, default) } else { self.global.bool(key, default) }
    }

    fn secs(&self, key: &str) -> Result<Option<Duration>, Diag> {
        if self.local.get(key).is_some() { self.local.secs(key) } else { self.global.secs(key) }
    }
}

fn resolve(host: &str, v6: bool) -> Option<IpAddr> {
    if let Some(ip) = parse_ip(host) {
        return Some(ip);
    }
    let addrs = (host, 0).to_socket_addrs().ok()?;
    addrs.map(|a| a.ip()).find(|ip| ip.is_ipv6() == v6)
}

/// `host[:port]`, `[v6]:port`; the port may be a service name.
fn host_port(s: &str, v6: bool) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(|| format!("unclosed `[` in `{s}`"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(port_by_name(p).ok_or_else(|| format!("bad port `{p}`"))?),
            None if tail.is_empty() => None,
            None => return Err(format!("cannot read `{s}`")),
        };
        return Ok((h.to_string(), port));
    }
    if v6 && s.matches(':').count() > 1 {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(port_by_name(p).ok_or_else(|| format!("bad port `{p}`"))?))),
        None => Ok((s.to_string(), None)),
    }
}

fn fwd_of(word: &str) -> Option<Fwd> {
    match word {
        "gate" | "gatewaying" | "dr" => Some(Fwd::Route),
        "masq" | "masquerading" | "nat" => Some(Fwd::Masq),
        "ipip" | "tunnel" | "tun" => Some(Fwd::Tunnel),
        _ => None,
    }
}

fn section(s: &Section, globals: &Scope) -> Result<VirtualService, Vec<Diag>> {
    let line = s.line;
    let err = |msg: String| vec![Diag { line, msg }];
    let local = Scope { entries: s.entries.clone() };
    let sc = Layered { local: &local, global: globals };
    let mut errors = Vec::new();

    // virtual = IP:port | host:service | fwmark
    let fwmark: Option<u32> = s.value.parse().ok();
    let protocol = match local.get("protocol") {
        Some(e) => match unquote(&e.value).to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            "fwm" => None,
            v => return Err(vec![Diag { line: e.line, msg: format!("unknown protocol `{v}` (tcp, udp, sctp or fwm)") }]),
        },
        None => Some(Proto::Tcp),
    };
    let af = if s.v6 { Af::Inet6 } else { Af::Inet };
    let (key, vport) = match fwmark {
        Some(mark) => {
            if mark == 0 {
                return Err(err("fwmark 0 is not a valid virtual service".into()));
            }
            (SvcKey::Fwmark { mark, af }, 0)
        }
        None => {
            let (h, port) = host_port(&s.value, s.v6).map_err(|m| err(format!("virtual: {m}")))?;
            let port = port.ok_or_else(|| err(format!("virtual `{}` has no port", s.value)))?;
            let addr = resolve(&h, s.v6).ok_or_else(|| err(format!("virtual: cannot resolve `{h}`")))?;
            // ldirectord: udp when the port is 53 and no protocol is given.
            let proto = match (local.get("protocol"), protocol, port) {
                (None, _, 53) => Proto::Udp,
                (None, _, _) => Proto::Tcp,
                (_, Some(p), _) => p,
                (Some(e), None, _) => {
                    return Err(vec![Diag { line: e.line, msg: "protocol fwm needs a numeric (fwmark) virtual".into() }]);
                }
            };
            if addr.is_ipv6() != s.v6 {
                // ldirectord: an IPv6 address needs `virtual6`, and `virtual6` resolves IPv6 only.
                return Err(err(if s.v6 {
                    format!("virtual6: `{h}` is not an IPv6 address")
                } else {
                    "cannot specify an IPv6 address here. please use \"virtual6\" instead.".into()
                }));
            }
            (SvcKey::Inet { proto, addr, port }, port)
        }
    };
    let is_udp = matches!(key, SvcKey::Inet { proto: Proto::Udp, .. });

    let sched = sc.get("scheduler").map(|e| unquote(&e.value)).unwrap_or_else(|| "wrr".into());
    if !crate::ctl::scheduler_available(&sched) {
        let l = local.get("scheduler").map_or(line, |e| e.line);
        errors.push(Diag { line: l, msg: format!("scheduler `{sched}` is not available in xlb's data plane") });
    }
    let mut spec = ServiceSpec {
        key,
        sched,
        flags: 0,
        timeout: 0,
        netmask: if af == Af::Inet6 { 128 } else { 0xffff_ffff },
        pe_name: String::new(),
    };
    if let Some(e) = local.get("persistent") {
        match unquote(&e.value).parse::<u32>() {
            Ok(n) if n > 0 => {
                spec.flags |= lb_common::SVC_F_PERSISTENT;
                spec.timeout = n;
            }
            _ => errors.push(Diag { line: e.line, msg: "`persistent` must be a positive number of seconds".into() }),
        }
    }
    if let Some(e) = local.get("netmask") {
        let v = unquote(&e.value);
        let m = if af == Af::Inet6 { v.parse::<u32>().ok().filter(|n| (1..=128).contains(n)) } else { parse_v4_mask(&v) };
        match m {
            Some(m) => spec.netmask = m,
            None => errors.push(Diag { line: e.line, msg: format!("bad netmask `{v}`") }),
        }
    }
    if let Some(e) = local.get("ops") {
        match (Scope { entries: vec![e.clone()] }).bool("ops", false) {
            Ok(true) => spec.flags |= lb_common::SVC_F_ONEPACKET,
            Ok(false) => {}
            Err(d) => errors.push(d),
        }
    }

    let quiescent = sc.bool("quiescent", true).unwrap_or_else(|d| {
        errors.push(d);
        true
    });
    let mut timing = |key: &str| sc.secs(key).unwrap_or_else(|d| {
        errors.push(d);
        None
    });
    let interval = timing("checkinterval").unwrap_or(Duration::from_secs(10));
    let checktimeout = timing("checktimeout");
    let connect_timeout = timing("connecttimeout").or(checktimeout).unwrap_or(Duration::from_secs(5));
    let negotiate_timeout = timing("negotiatetimeout").or(checktimeout).unwrap_or(Duration::from_secs(30));
    // ldirectord runs `checkcommand` for at most checktimeout (else negotiatetimeout, else 5 s).
    let external_timeout = checktimeout.or_else(|| sc.get("negotiatetimeout").and(Some(negotiate_timeout))).unwrap_or(Duration::from_secs(5));
    let checkcommand = local.get("checkcommand").map(|e| unquote(&e.value)).unwrap_or_else(|| "/bin/true".into());
    let is_tcp = matches!(key, SvcKey::Inet { proto: Proto::Tcp, .. });
    let fail_after = match sc.get("failurecount") {
        None => 1,
        Some(e) => match unquote(&e.value).parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(Diag { line: e.line, msg: "`failurecount` must be a positive number".into() });
                1
            }
        },
    };

    let checktype_e = local.get("checktype");
    let checktype = checktype_e.map(|e| unquote(&e.value).to_ascii_lowercase()).unwrap_or_else(|| "negotiate".into());
    let checktype_line = checktype_e.map_or(line, |e| e.line);
    let checkport = match local.get("checkport") {
        None => None,
        Some(e) => match port_by_name(&unquote(&e.value)) {
            Some(p) if p > 0 => Some(p),
            _ => {
                errors.push(Diag { line: e.line, msg: format!("bad checkport `{}`", e.value) });
                None
            }
        },
    };
    let service_e = local.get("service");
    let request = local.get("request").map(|e| unquote(&e.value));
    let receive = local.get("receive").map(|e| unquote(&e.value));
    let httpmethod = local.get("httpmethod").map(|e| unquote(&e.value).to_ascii_uppercase()).unwrap_or_else(|| "GET".into());
    if httpmethod != "GET" && httpmethod != "HEAD" {
        let l = local.get("httpmethod").map_or(line, |e| e.line);
        errors.push(Diag { line: l, msg: format!("httpmethod must be GET or HEAD, not `{httpmethod}`") });
    }
    let virtualhost = local.get("virtualhost").map(|e| unquote(&e.value));
    let receive_line = local.get("receive").map(|e| e.line);

    // The check of one real server (its own request/receive override the section's).
    let make_check = |addr: IpAddr, port: u16, req: Option<&str>, rec: Option<&str>, l: usize| -> Result<Vec<Check>, Diag> {
        let real_port = port;
        let port = checkport.unwrap_or(port);
        let service = match service_e {
            Some(e) => unquote(&e.value).to_ascii_lowercase(),
            None => match port {
                80 | 8080 => "http".into(),
                443 => "https".into(),
                25 => "smtp".into(),
                53 => "dns".into(),
                _ => "none".into(),
            },
        };
        let kind = match checktype.as_str() {
            "on" => return Ok(vec![check(CheckKind::On, SocketAddr::new(addr, port), interval, connect_timeout, fail_after)]),
            "off" => return Ok(vec![check(CheckKind::Off, SocketAddr::new(addr, port), interval, connect_timeout, fail_after)]),
            // ldirectord pings the real server for a connect check of a UDP service.
            "connect" | "ping" if is_udp || checktype == "ping" => {
                return Ok(vec![check(CheckKind::Ping, SocketAddr::new(addr, port), interval, connect_timeout, fail_after)]);
            }
            "connect" => CheckKind::Connect,
            "external" => {
                // As ldirectord holds them: IPv6 addresses in brackets, a fwmark for its virtual.
                let shown = |a: IpAddr| if a.is_ipv6() { format!("[{a}]") } else { a.to_string() };
                let argv = vec![
                    checkcommand.clone(),
                    match key {
                        SvcKey::Fwmark { mark, .. } => mark.to_string(),
                        SvcKey::Inet { addr, .. } => shown(addr),
                    },
                    vport.to_string(),
                    shown(addr),
                    real_port.to_string(),
                ];
                let kind = CheckKind::External { argv, dynamic: false };
                return Ok(vec![check(kind, SocketAddr::new(addr, port), interval, external_timeout, fail_after)]);
            }
            "external-perl" => {
                return Err(Diag {
                    line: checktype_line,
                    msg: "checktype external-perl is not supported by lbd (it runs no Perl): use checktype = external".into(),
                });
            }
            "negotiate" => match service.as_str() {
                "http" | "https" => {
                    let path = req.unwrap_or("/");
                    if path.contains("://") {
                        return Err(Diag {
                            line: l,
                            msg: format!("request `{path}` is a URL: lbd checks the real server itself, give its path"),
                        });
                    }
                    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
                    // ldirectord's Host header: the virtualhost, else the server's address (no port).
                    let host = virtualhost.clone().unwrap_or_else(|| match addr {
                        IpAddr::V6(a) => format!("[{a}]"),
                        a => a.to_string(),
                    });
                    // ldirectord matches `receive` as a Perl regular expression; an empty one
                    // accepts any body.
                    let regex = rec.filter(|r| !r.is_empty()).map(str::to_string);
                    if let Some(re) = &regex
                        && let Err(e) = regex_lite::Regex::new(re)
                    {
                        return Err(Diag { line: if rec == receive.as_deref() { receive_line.unwrap_or(l) } else { l }, msg: format!("receive {re:?} is not a regular expression lbd reads: {e}") });
                    }
                    // https: LWP with `verify_hostname => 0`, so the certificate is not verified;
                    // lbd sends the virtualhost as SNI too.
                    let tls = (service == "https").then(|| TlsCheck { server_name: virtualhost.clone(), send_sni: virtualhost.is_some(), ca_pem: None, client_pem: None });
                    CheckKind::Http(HttpCheck {
                        method: httpmethod.clone(),
                        path,
                        host,
                        tls,
                        status: vec![(200, 299)],
                        regex,
                        regex_no_match: false,
                        digest: None,
                        follow_redirects: true,
                        // LWP asks with HTTP/1.1.
                        http10: false,
                        connection_close: false,
                    })
                }
                "simpletcp" => CheckKind::SimpleTcp {
                    request: req.unwrap_or_default().to_string(),
                    receive: rec.unwrap_or_default().to_string(),
                },
                "none" => CheckKind::On,
                "dns" => {
                    let Some(expect) = rec.filter(|r| !r.is_empty()) else {
                        return Err(Diag {
                            line: l,
                            msg: "service = dns needs `receive` (the answer expected; ldirectord finds every server down \
                                  without it)"
                                .into(),
                        });
                    };
                    // ldirectord strips a leading `/` (the default request) from the name.
                    let name = req.unwrap_or_default().trim_start_matches('/').to_string();
                    if name.is_empty() {
                        return Err(Diag { line: l, msg: "service = dns needs `request` (the name to query)".into() });
                    }
                    let qtype = if name.parse::<IpAddr>().is_ok() { "PTR" } else { "A" };
                    let kind = CheckKind::Dns { name, qtype: qtype.into(), tcp: is_tcp, expect: Some(expect.to_string()) };
                    return Ok(vec![check(kind, SocketAddr::new(addr, port), interval, negotiate_timeout, fail_after)]);
                }
                // Net::SMTP's default greeting name.
                "smtp" | "submission" if !is_udp => CheckKind::Smtp { helo: "localhost.localdomain".into() },
                other => {
                    return Err(Diag {
                        line: service_e.map_or(checktype_line, |e| e.line),
                        msg: format!(
                            "checktype negotiate for service `{other}` is not supported by lbd (http, https, simpletcp, \
                             dns, smtp, submission and none are; use checktype = connect for a TCP check)"
                        ),
                    });
                }
            },
            other => {
                return Err(Diag {
                    line: checktype_line,
                    msg: format!("checktype `{other}` is not supported by lbd (connect, negotiate, external, ping, on, off are)"),
                });
            }
        };
        if is_udp {
            return Err(Diag {
                line: checktype_line,
                msg: format!("checktype {checktype} cannot check a UDP service (use connect, external, service = dns, on or off)"),
            });
        }
        if port == 0 {
            return Err(Diag { line: l, msg: "no port to check this real server on: set `checkport`".into() });
        }
        let timeout = if checktype == "negotiate" { negotiate_timeout } else { connect_timeout };
        Ok(vec![check(kind, SocketAddr::new(addr, port), interval, timeout, fail_after)])
    };

    // Real servers: `real` in a `virtual` section, `real6` in a `virtual6` one (and the same
    // for `fallback`/`fallback6`), as ldirectord requires.
    let (real_key, fallback_key) = if s.v6 { ("real6", "fallback6") } else { ("real", "fallback") };
    for e in s.entries.iter().filter(|e| ["real", "real6", "fallback", "fallback6"].contains(&e.key.as_str())) {
        if e.key != real_key && e.key != fallback_key {
            let want = if e.key.starts_with("real") { real_key } else { fallback_key };
            errors.push(Diag { line: e.line, msg: format!("cannot specify \"{}\" here.  please use \"{want}\" instead", e.key) });
        }
    }
    let mut reals = Vec::new();
    for e in s.entries.iter().filter(|e| e.key == real_key) {
        match real(e, vport, fwmark.is_some(), s.v6) {
            Ok(list) => {
                for (dest, req, rec) in list {
                    let req = req.as_deref().or(request.as_deref());
                    let rec = rec.as_deref().or(receive.as_deref());
                    match make_check(dest.addr, dest.port, req, rec, e.line) {
                        Ok(checks) => reals.push(RealServer { line: e.line, dest, checks, quiescent }),
                        Err(d) => errors.push(d),
                    }
                }
            }
            Err(msg) => errors.push(Diag { line: e.line, msg }),
        }
    }
    let fallback = match sc.get(fallback_key) {
        None => None,
        Some(e) => match real(e, vport, fwmark.is_some(), s.v6) {
            Ok(mut list) if list.len() == 1 => list.pop().map(|(d, _, _)| d),
            Ok(_) => {
                errors.push(Diag { line: e.line, msg: "fallback must be one server".into() });
                None
            }
            Err(msg) => {
                errors.push(Diag { line: e.line, msg: format!("fallback: {msg}") });
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(VirtualService { line, spec, reals, fallback })
    } else {
        Err(errors)
    }
}

fn check(kind: CheckKind, target: SocketAddr, interval: Duration, timeout: Duration, fail_after: u32) -> Check {
    Check { kind, target, interval, timeout, fail_after, retry_delay: interval, rise_after: 1 }
}

type RealLine = (DestSpec, Option<String>, Option<String>);

/// `real = ip|host[->ip2][:port] [gate|masq|ipip] [weight] ["request", "receive"]` (also used
/// for `fallback`).
fn real(e: &Entry, vport: u16, fwmark: bool, v6: bool) -> Result<Vec<RealLine>, String> {
    let w = words(&e.value);
    let mut it = w.iter();
    let first = it.next().ok_or("no address")?;
    let (hosts, port) = match first.split_once("->") {
        Some((a, b)) => {
            let (b, port) = host_port(b, v6)?;
            let a = parse_ip(a).ok_or_else(|| format!("bad address `{a}` in range"))?;
            let b = parse_ip(&b).ok_or_else(|| format!("bad address `{b}` in range"))?;
            let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
                return Err("Address range for IPv6 is not supported yet".into());
            };
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 255 {
                return Err("bad address range (at most 256 addresses, low->high)".into());
            }
            ((a..=b).map(|n| IpAddr::V4(n.into())).collect::<Vec<_>>(), port)
        }
        None => {
            let (h, port) = host_port(first, v6)?;
            let ip = resolve(&h, v6).ok_or_else(|| format!("cannot resolve `{h}`"))?;
            // ldirectord resolves a real server in the section's family only (no mixed families).
            if ip.is_ipv6() != v6 {
                let fam = if v6 { "IPv6" } else { "IPv4" };
                return Err(format!("`{h}` is not an {fam} address (use {})", if v6 { "real/virtual" } else { "real6/virtual6" }));
            }
            (vec![ip], port)
        }
    };
    let mut fwd = Fwd::Route;
    let mut weight = 1i32;
    let mut strings = Vec::new();
    let (mut lthr, mut uthr) = (0u32, 0u32);
    let mut rest: Vec<&String> = it.collect();
    if let Some(f) = rest.first().and_then(|w| fwd_of(&w.to_ascii_lowercase())) {
        fwd = f;
        rest.remove(0);
    }
    if let Some(n) = rest.first().and_then(|w| w.parse::<i32>().ok()) {
        if !(0..=65535).contains(&n) {
            return Err(format!("weight {n} out of range 0..65535"));
        }
        weight = n;
        rest.remove(0);
    }
    for w in rest {
        if let Some(n) = w.strip_prefix("<l:").and_then(|s| s.strip_suffix('>')) {
            lthr = n.parse().map_err(|_| format!("bad lower threshold `{w}`"))?;
        } else if let Some(n) = w.strip_prefix("<u:").and_then(|s| s.strip_suffix('>')) {
            uthr = n.parse().map_err(|_| format!("bad upper threshold `{w}`"))?;
        } else if strings.len() < 2 {
            strings.push(w.clone());
        } else {
            return Err(format!("unexpected `{w}` (address[:port] [gate|masq|ipip] [weight] [\"request\", \"receive\"])"));
        }
    }
    let port = match (fwmark, port) {
        (true, p) => p.unwrap_or(0),
        // DR and TUN cannot change the port: it is the virtual's.
        (false, Some(p)) if fwd == Fwd::Masq => p,
        (false, _) => vport,
    };
    let mut it = strings.into_iter();
    let (req, rec) = (it.next(), it.next());
    Ok(hosts
        .into_iter()
        .map(|addr| {
            let dest = DestSpec { addr, port, fwd, weight, u_threshold: uthr, l_threshold: lthr, tunnel: Tunnel::default() };
            (dest, req.clone(), rec.clone())
        })
        .collect())
}
