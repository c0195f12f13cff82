//! piranha's `/etc/sysconfig/ha/lvs.cf` (Red Hat's pulse/lvsd/nanny, `lvs.cf(5)`).
//!
//! Global `keyword = value` lines, then `virtual NAME {` blocks holding the service's settings
//! and `server NAME {` blocks, each closed by `}`. Defaults are piranha's (lvsconfig.c):
//! `network = nat`, `port = 80`, `scheduler = wlc`, `timeout = 10`, `reentry = 180`,
//! `keepalive = 2`, `deadtime = 5`, `heartbeat_port = 539`, and a virtual or real server
//! without `active = 1` is not configured.
//!
//! Leniencies, for files copied from web pages as seed 000's was (each reported as a warning,
//! never taken for configuration):
//! - A comment starts at `#` at the start of a line or after a blank (any Unicode blank: pages
//!   carry no-break spaces), outside quotes; piranha itself only knows whole-line comments.
//! - **Wrapped comments.** A line with no `=`, no `{` and no `}`, not starting with a keyword,
//!   that directly follows a line holding a `#` comment (or another such line) is the rest of
//!   that comment, wrapped by the page. Any other line without `=` is an error, so a forgotten
//!   `=` (`port 80`) is still reported, wherever it stands.
//! - The name of `virtual NAME {` may be glued to its `{` and may be a web-page link
//!   `[text](url)` (a scrape of `virtual text {`): the name is `text`.
//!
//! Everything else that piranha would refuse, and every setting lbd cannot honour, is an error
//! with its line number; the whole file is refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{Check, CheckKind, DesiredConfig, Diag, RealServer, VirtualService};
use super::{parse_secs, parse_v4_mask, port_by_name};
use crate::ctl::{DestSpec, ServiceSpec};
use crate::model::{Af, Fwd, Proto, SvcKey, Tunnel};

/// Global keywords of lvs.cf (lvsconfig.c).
const GLOBAL: &[&str] = &[
    "serial_no",
    "primary",
    "primary_private",
    "service",
    "backup_active",
    "backup",
    "backup_private",
    "heartbeat",
    "heartbeat_port",
    "keepalive",
    "deadtime",
    "network",
    "nat_router",
    "nat_nmask",
    "debug_level",
    "monitor_links",
    "syncdaemon",
    "syncd_iface",
    "syncd_id",
    "tcp_timeout",
    "tcpfin_timeout",
    "udp_timeout",
    "hard_shutdown",
    "rsh_command",
];

/// Keywords of a `virtual` block.
const VIRTUAL: &[&str] = &[
    "active",
    "address",
    "port",
    "persistent",
    "pmask",
    "send",
    "expect",
    "use_regex",
    "send_program",
    "expect_program",
    "load_monitor",
    "scheduler",
    "protocol",
    "timeout",
    "reentry",
    "quiesce_server",
    "fwmark",
    "vip_nmask",
    "sorry_server",
];

/// Keywords of a `server` block.
const SERVER: &[&str] = &["address", "active", "weight", "port"];

/// The director pair of an lvs.cf: who is primary, who is backup, and how they talk (pulse's
/// settings). [`crate::pulse`] drives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub primary: Option<Ipv4Addr>,
    pub backup: Option<Ipv4Addr>,
    /// `backup_active = 1`: a backup director exists.
    pub backup_active: bool,
    /// `heartbeat = 1`: the two exchange heartbeats.
    pub heartbeat: bool,
    pub heartbeat_port: u16,
    /// Time between two heartbeats.
    pub keepalive: Duration,
    /// Silence after which the peer is dead.
    pub deadtime: Duration,
    /// `syncdaemon = 1`: the active node runs the connection sync daemon as master, the
    /// passive one as backup.
    pub syncdaemon: bool,
    pub syncd_iface: String,
    pub syncd_id: u8,
    /// The addresses the active node holds: each active virtual server's `address`, and
    /// `nat_router`.
    pub vips: Vec<Vip>,
}

/// `address = VIP dev:alias`: an address the active director brings up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub line: usize,
    pub addr: Ipv4Addr,
    /// From `vip_nmask` (`nat_nmask`), else 32.
    pub prefix: u8,
    /// The device (`eth0` of `eth0:0`); empty when the line names none.
    pub dev: String,
    /// The whole `eth0:0`, as `ip addr add ... label` takes it; empty when no alias.
    pub label: String,
}

#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    key: String,
    value: String,
}

#[derive(Default)]
struct Block {
    line: usize,
    name: String,
    entries: Vec<Entry>,
    servers: Vec<Block>,
}

impl Block {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

enum Open {
    Global,
    Virtual,
    Server,
}

/// Removes a comment (see the module's notes); tells whether there was one.
fn strip_comment(line: &str) -> (&str, bool) {
    let mut quote: Option<char> = None;
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' | '\'' if quote == Some(c) => quote = None,
            '"' | '\'' if quote.is_none() && prev_blank => quote = Some(c),
            '#' if quote.is_none() && prev_blank => return (&line[..i], true),
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    (line, false)
}

/// `[text](url)` → `text`.
fn unlink(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('[')?;
    let (text, url) = rest.split_once("](")?;
    url.ends_with(')').then_some(text)
}

/// Splits a value into words; a quoted word (`"..."` or `'...'`) keeps its blanks, loses its
/// quotes.
fn words(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            for d in chars.by_ref() {
                if d == c {
                    closed = true;
                    break;
                }
                w.push(d);
            }
            if !closed {
                return Err(format!("unbalanced {c} quote"));
            }
            if chars.peek().is_some_and(|d| !d.is_whitespace()) {
                return Err(format!("text glued to the closing {c} quote"));
            }
        } else {
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                w.push(d);
                chars.next();
            }
        }
        out.push(w);
    }
    Ok(out)
}

/// Converts nanny's escapes in send/expect strings: `\n`, `\r`, `\t`, `\\`, `\'`, `\"`; any
/// other backslash stays as it is (as nanny's convert_str leaves it).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let repl = match it.peek() {
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('\\') => '\\',
            Some('\'') => '\'',
            Some('"') => '"',
            _ => {
                out.push('\\');
                continue;
            }
        };
        it.next();
        out.push(repl);
    }
    out
}

pub fn parse(text: &str) -> Result<DesiredConfig, Vec<Diag>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut global = Block::default();
    let mut virtuals: Vec<Block> = Vec::new();
    let mut open = Open::Global;
    // (last line, first line) of the comment that the next line may continue.
    let mut comment: Option<(usize, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (l, had_comment) = strip_comment(raw.trim_end_matches('\r'));
        let l = l.trim();
        let continues = comment.filter(|(last, _)| *last + 1 == line).map(|(_, first)| first);
        if l.is_empty() {
            comment = had_comment.then_some((line, line));
            continue;
        }
        let first_word = l.split_whitespace().next().unwrap_or("");
        let keyword = [GLOBAL, VIRTUAL, SERVER].iter().any(|k| k.contains(&first_word));
        if let Some(first) = continues
            && !l.contains('=')
            && !l.contains('{')
            && !l.contains('}')
            && !keyword
        {
            warnings.push(Diag { line, msg: format!("taken as the rest of the comment of line {first} (a wrapped comment)") });
            comment = Some((line, first));
            continue;
        }
        comment = had_comment.then_some((line, line));

        if l == "}" {
            open = match open {
                Open::Server => Open::Virtual,
                Open::Virtual => Open::Global,
                Open::Global => {
                    errors.push(Diag { line, msg: "`}` closes no block".into() });
                    Open::Global
                }
            };
            continue;
        }
        if let Some(head) = l.strip_suffix('{') {
            let mut it = head.split_whitespace();
            let kind = it.next().unwrap_or("");
            let name = it.next();
            if it.next().is_some() || name.is_none() {
                errors.push(Diag { line, msg: format!("expected `{kind} NAME {{`, found `{l}`") });
                continue;
            }
            let raw_name = name.unwrap_or_default();
            let name = match unlink(raw_name) {
                Some(t) if !t.is_empty() && !t.contains(char::is_whitespace) => {
                    warnings.push(Diag { line, msg: format!("name `{raw_name}` is a web-page link: read as `{t}`") });
                    t
                }
                _ => raw_name,
            };
            let block = Block { line, name: name.to_string(), ..Block::default() };
            match (kind, &open) {
                ("virtual", Open::Global) => {
                    virtuals.push(block);
                    open = Open::Virtual;
                }
                ("server", Open::Virtual) => {
                    if let Some(v) = virtuals.last_mut() {
                        v.servers.push(block);
                    }
                    open = Open::Server;
                }
                ("failover", Open::Global) => {
                    errors.push(Diag {
                        line,
                        msg: "`failover` services (piranha's fos) are not supported: lbd runs `service = lvs`".into(),
                    });
                    // Its lines are not checked: skipped as a virtual block would be.
                    virtuals.push(Block { line: 0, ..block });
                    open = Open::Virtual;
                }
                ("virtual" | "failover", _) => {
                    errors.push(Diag { line, msg: format!("`{kind}` inside a block: close the block above with `}}` first") });
                }
                ("server", _) => errors.push(Diag { line, msg: "`server` is only valid inside a `virtual` block".into() }),
                _ => errors.push(Diag { line, msg: format!("unknown block `{kind}` (virtual or server)") }),
            }
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            errors.push(Diag { line, msg: format!("expected `keyword = value`, `virtual NAME {{`, `server NAME {{` or `}}`, found `{l}`") });
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            errors.push(Diag { line, msg: format!("expected one keyword before `=`, found `{key}`") });
            continue;
        }
        let e = Entry { line, key: key.to_string(), value: value.trim().to_string() };
        let (known, block, what) = match open {
            Open::Global => (GLOBAL, Some(&mut global), "global"),
            Open::Virtual => (VIRTUAL, virtuals.last_mut(), "virtual"),
            Open::Server => (SERVER, virtuals.last_mut().and_then(|v| v.servers.last_mut()), "server"),
        };
        if !known.contains(&key) {
            let hint = if GLOBAL.contains(&key) {
                " (a global setting: put it before the first `virtual` block)"
            } else if VIRTUAL.contains(&key) {
                " (a `virtual` block setting)"
            } else {
                ""
            };
            errors.push(Diag { line, msg: format!("unknown keyword `{key}` in a {what} block{hint}") });
            continue;
        }
        if let Some(b) = block {
            if let Some(prev) = b.get(key) {
                warnings.push(Diag { line, msg: format!("`{key}` set again (line {} is overridden)", prev.line) });
            }
            b.entries.push(e);
        }
    }
    match open {
        Open::Global => {}
        Open::Virtual | Open::Server => {
            let l = virtuals.last().map_or(0, |v| v.line);
            let l = match open {
                Open::Server => virtuals.last().and_then(|v| v.servers.last()).map_or(l, |s| s.line),
                _ => l,
            };
            errors.push(Diag { line: l, msg: "block not closed: `}` missing".into() });
        }
    }

    let mut cfg = DesiredConfig::default();
    let globals = globals(Settings { block: &global, errors: &mut errors }, &mut warnings);
    let mut vips = Vec::new();
    for v in virtuals.iter().filter(|v| v.line > 0) {
        match virtual_service(v, &globals, &mut warnings) {
            Ok(Some((svc, vip))) => {
                cfg.services.push(svc);
                // Several virtual servers on one VIP (ports) bring it up once.
                if let Some(vip) = vip
                    && !vips.iter().any(|v: &Vip| v.addr == vip.addr && v.dev == vip.dev)
                {
                    vips.push(vip);
                }
            }
            Ok(None) => {}
            Err(mut d) => errors.append(&mut d),
        }
    }
    vips.extend(globals.nat_router.clone());
    cfg.pair = Some(Pair { vips, ..globals.pair });
    super::finish(cfg, warnings, errors)
}

struct Globals {
    fwd: Fwd,
    pair: Pair,
    nat_router: Option<Vip>,
}

/// Typed reads of one block's values; problems go to `errors`.
struct Settings<'a> {
    block: &'a Block,
    errors: &'a mut Vec<Diag>,
}

impl Settings<'_> {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.block.get(key)
    }

    fn err(&mut self, e: &Entry, msg: String) {
        self.errors.push(Diag { line: e.line, msg });
    }

    /// The value as one word (quotes removed); none when absent or wrong.
    fn word(&mut self, key: &str) -> Option<(usize, String)> {
        let e = self.get(key)?.clone();
        match words(&e.value) {
            Ok(w) if w.len() == 1 => w.into_iter().next().map(|w| (e.line, w)),
            Ok(w) if w.is_empty() => {
                self.err(&e, format!("`{key}` has no value"));
                None
            }
            Ok(_) => {
                self.err(&e, format!("`{key}` takes one value, found `{}`", e.value));
                None
            }
            Err(m) => {
                self.err(&e, format!("`{key}`: {m}"));
                None
            }
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.word(key) {
            None => default,
            Some((_, w)) if w == "1" => true,
            Some((_, w)) if w == "0" => false,
            Some((line, w)) => {
                self.errors.push(Diag { line, msg: format!("`{key}` must be 0 or 1, not `{w}`") });
                default
            }
        }
    }

    fn num<T: std::str::FromStr>(&mut self, key: &str, ok: impl Fn(&T) -> bool, what: &str) -> Option<T> {
        let (line, w) = self.word(key)?;
        match w.parse::<T>() {
            Ok(n) if ok(&n) => Some(n),
            _ => {
                self.errors.push(Diag { line, msg: format!("`{key}` must be {what}, not `{w}`") });
                None
            }
        }
    }

    fn secs(&mut self, key: &str, default: Duration) -> Duration {
        let Some((line, w)) = self.word(key) else { return default };
        parse_secs(&w).unwrap_or_else(|| {
            self.errors.push(Diag { line, msg: format!("`{key}` must be a positive number of seconds, not `{w}`") });
            default
        })
    }

    fn ipv4(&mut self, key: &str) -> Option<Ipv4Addr> {
        let (line, w) = self.word(key)?;
        w.parse().map_err(|_| self.errors.push(Diag { line, msg: format!("`{key}` must be an IPv4 address, not `{w}`") })).ok()
    }

    fn mask(&mut self, key: &str) -> Option<u32> {
        let (line, w) = self.word(key)?;
        parse_v4_mask(&w).or_else(|| {
            self.errors.push(Diag { line, msg: format!("`{key}` must be a netmask like 255.255.255.0, not `{w}`") });
            None
        })
    }

    /// `IP [dev[:alias]]` (virtual `address`, `nat_router`).
    fn vip(&mut self, key: &str, prefix: u8) -> Option<Vip> {
        let e = self.get(key)?.clone();
        let w = match words(&e.value) {
            Ok(w) => w,
            Err(m) => {
                self.err(&e, format!("`{key}`: {m}"));
                return None;
            }
        };
        let (ip, dev) = match w.as_slice() {
            [ip] => (ip, None),
            [ip, dev] => (ip, Some(dev)),
            _ => {
                self.err(&e, format!("`{key}` must be `IP DEVICE:ALIAS`, found `{}`", e.value));
                return None;
            }
        };
        let Ok(addr) = ip.parse::<Ipv4Addr>() else {
            self.err(&e, format!("`{key}`: `{ip}` is not an IPv4 address"));
            return None;
        };
        let (dev, label) = match dev {
            None => (String::new(), String::new()),
            Some(d) => match d.split_once(':') {
                Some((dv, alias)) if !dv.is_empty() && !alias.is_empty() => (dv.to_string(), d.clone()),
                None if !d.is_empty() => (d.clone(), String::new()),
                _ => {
                    self.err(&e, format!("`{key}`: bad device `{d}` (DEVICE or DEVICE:ALIAS)"));
                    return None;
                }
            },
        };
        if dev.len() > 15 || label.len() > 15 {
            self.err(&e, format!("`{key}`: device name `{}` is longer than 15 characters", if label.is_empty() { &dev } else { &label }));
            return None;
        }
        Some(Vip { line: e.line, addr, prefix, dev, label })
    }
}

fn prefix_of(mask: Option<u32>) -> u8 {
    mask.map_or(32, |m| m.leading_ones() as u8)
}

fn globals(mut g: Settings<'_>, warnings: &mut Vec<Diag>) -> Globals {
    if let Some((line, w)) = g.word("service")
        && w != "lvs"
    {
        let msg = if w == "fos" {
            "`service = fos` (failover services) is not supported: lbd runs `service = lvs`".to_string()
        } else {
            format!("`service` must be lvs (or fos), not `{w}`")
        };
        g.errors.push(Diag { line, msg });
    }
    let _ = g.num::<u64>("serial_no", |_| true, "a number");
    let fwd = match g.word("network") {
        None => Fwd::Masq,
        Some((_, w)) if w == "direct" => Fwd::Route,
        Some((_, w)) if w == "nat" => Fwd::Masq,
        Some((_, w)) if w == "tunnel" => Fwd::Tunnel,
        Some((line, w)) => {
            g.errors.push(Diag { line, msg: format!("`network` must be direct, nat or tunnel, not `{w}`") });
            Fwd::Masq
        }
    };
    let primary = g.ipv4("primary");
    let backup = g.ipv4("backup");
    let _ = g.ipv4("primary_private");
    let _ = g.ipv4("backup_private");
    let backup_active = g.bool("backup_active", false);
    let heartbeat = g.bool("heartbeat", false);
    let heartbeat_port = g.num::<u16>("heartbeat_port", |p| *p > 0, "a port 1..65535").unwrap_or(539);
    let keepalive = g.secs("keepalive", Duration::from_secs(2));
    let deadtime = g.secs("deadtime", Duration::from_secs(5));
    let syncdaemon = g.bool("syncdaemon", false);
    let syncd_iface = g.word("syncd_iface").map_or_else(|| "eth0".to_string(), |(_, w)| w);
    let syncd_id = g.num::<u8>("syncd_id", |_| true, "a number 0..255").unwrap_or(0);
    let nat_prefix = prefix_of(g.mask("nat_nmask"));
    let nat_router = g.vip("nat_router", nat_prefix);
    let _ = g.bool("monitor_links", false);
    let _ = g.bool("hard_shutdown", false);
    let _ = g.word("debug_level");
    for key in ["tcp_timeout", "tcpfin_timeout", "udp_timeout"] {
        if let Some(n) = g.num::<u32>(key, |_| true, "a number of seconds")
            && let Some(e) = g.get(key)
        {
            warnings.push(Diag {
                line: e.line,
                msg: format!("`{key} = {n}` is not applied by lbd: set it with `lbadm --set` (ipvsadm's --set)"),
            });
        }
    }
    if let Some((line, w)) = g.word("rsh_command") {
        warnings.push(Diag { line, msg: format!("`rsh_command = {w}`: lbd does not copy lvs.cf to the peer; keep both copies alike") });
    }
    if backup_active && heartbeat {
        let missing = [("primary", primary), ("backup", backup)]
            .into_iter()
            .filter(|(_, a)| a.is_none_or(|a| a.is_unspecified()))
            .map(|(k, _)| k)
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            let line = g.get("heartbeat").map_or(0, |e| e.line);
            g.errors.push(Diag { line, msg: format!("heartbeat between the directors needs `{}` set", missing.join("` and `")) });
        }
    }
    Globals {
        fwd,
        pair: Pair {
            primary,
            backup,
            backup_active,
            heartbeat,
            heartbeat_port,
            keepalive,
            deadtime,
            syncdaemon,
            syncd_iface,
            syncd_id,
            vips: Vec::new(),
        },
        nat_router,
    }
}

/// One `virtual` block: its service (none when `active = 0`) and the address it brings up.
fn virtual_service(v: &Block, g: &Globals, warnings: &mut Vec<Diag>) -> Result<Option<(VirtualService, Option<Vip>)>, Vec<Diag>> {
    let mut errors = Vec::new();
    let mut s = Settings { block: v, errors: &mut errors };
    let line = v.line;
    let active = s.bool("active", false);
    let port = match s.word("port") {
        None => 80,
        Some((l, w)) => port_by_name(&w).unwrap_or_else(|| {
            s.errors.push(Diag { line: l, msg: format!("`port` must be a port number or service name, not `{w}`") });
            80
        }),
    };
    let proto = match s.word("protocol") {
        None => Proto::Tcp,
        Some((_, w)) if w == "tcp" => Proto::Tcp,
        Some((_, w)) if w == "udp" => Proto::Udp,
        Some((l, w)) => {
            s.errors.push(Diag { line: l, msg: format!("`protocol` must be tcp or udp, not `{w}`") });
            Proto::Tcp
        }
    };
    let fwmark = s.num::<u32>("fwmark", |n| *n > 0, "a positive number");
    let vip_prefix = prefix_of(s.mask("vip_nmask"));
    let vip = s.vip("address", vip_prefix);
    if s.get("address").is_none() {
        s.errors.push(Diag { line, msg: format!("virtual server `{}` has no `address`", v.name) });
    }
    let sched = s.word("scheduler").unwrap_or((line, "wlc".to_string()));
    if !crate::ctl::scheduler_available(&sched.1) {
        s.errors.push(Diag { line: sched.0, msg: format!("scheduler `{}` is not available in xlb's data plane", sched.1) });
    }
    let persistent = s.num::<u32>("persistent", |_| true, "a number of seconds").unwrap_or(0);
    let pmask = s.mask("pmask");
    if pmask.is_some() && persistent == 0 {
        let l = s.get("pmask").map_or(line, |e| e.line);
        warnings.push(Diag { line: l, msg: "`pmask` without `persistent`: no effect".into() });
    }
    let timeout = s.secs("timeout", Duration::from_secs(10));
    let reentry = s.secs("reentry", Duration::from_secs(180));
    let quiesce = s.bool("quiesce_server", false);
    let use_regex = s.bool("use_regex", false);
    let send = s.word("send").map(|(_, w)| unescape(&w));
    let expect = s.word("expect").map(|(l, w)| (l, unescape(&w)));
    if let Some((l, re)) = &expect
        && use_regex
        && let Err(e) = regex_lite::Regex::new(re)
    {
        s.errors.push(Diag { line: *l, msg: format!("`expect` is not a valid regular expression: {e}") });
    }
    for key in ["send_program", "expect_program"] {
        if let Some(e) = s.get(key).cloned() {
            s.err(&e, format!("`{key}`: lbd runs no external check programs (use send/expect)"));
        }
    }
    if let Some((l, w)) = s.word("load_monitor")
        && w != "none"
    {
        warnings.push(Diag { line: l, msg: format!("`load_monitor = {w}`: lbd does not change weights by load; the configured weights stay") });
    }
    let sorry = s.ipv4("sorry_server");
    let fwd = g.fwd;

    let key = match (fwmark, &vip) {
        (Some(mark), _) => SvcKey::Fwmark { mark, af: Af::Inet },
        (None, Some(vip)) => SvcKey::Inet { proto, addr: IpAddr::V4(vip.addr), port },
        (None, None) => SvcKey::Inet { proto, addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port },
    };
    let mut spec = ServiceSpec { key, sched: sched.1, flags: 0, timeout: 0, netmask: 0xffff_ffff, pe_name: String::new() };
    if persistent > 0 {
        spec.flags |= lb_common::SVC_F_PERSISTENT;
        spec.timeout = persistent;
        if let Some(m) = pmask {
            spec.netmask = m;
        }
    }
    if matches!(spec.key, SvcKey::Inet { proto: Proto::Udp, .. }) && send.is_none() {
        // nanny waits for an answer to nothing: the server would never pass.
        let l = s.get("protocol").map_or(line, |e| e.line);
        s.errors.push(Diag { line: l, msg: "a UDP virtual server needs `send` (nanny's check sends it and waits for an answer)".into() });
    }

    let mut reals = Vec::new();
    for sv in &v.servers {
        let mut ss = Settings { block: sv, errors: &mut errors };
        let r_active = ss.bool("active", false);
        let addr = ss.ipv4("address");
        if ss.get("address").is_none() {
            ss.errors.push(Diag { line: sv.line, msg: format!("server `{}` has no `address`", sv.name) });
        }
        let weight = ss.num::<i32>("weight", |w| (0..=65535).contains(w), "a weight 0..65535").unwrap_or(1);
        let rport = match ss.word("port") {
            None => port,
            Some((l, w)) => match port_by_name(&w) {
                Some(p) if fwd == Fwd::Masq || p == port || fwmark.is_some() => p,
                Some(p) => {
                    ss.errors.push(Diag { line: l, msg: format!("port {p} differs from the virtual's {port}: only NAT (network = nat) can change it") });
                    port
                }
                None => {
                    ss.errors.push(Diag { line: l, msg: format!("`port` must be a port number or service name, not `{w}`") });
                    port
                }
            },
        };
        let (Some(addr), true) = (addr, r_active) else { continue };
        let dest = DestSpec {
            addr: IpAddr::V4(addr),
            port: rport,
            fwd,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Tunnel::default(),
        };
        let target = SocketAddr::new(IpAddr::V4(addr), rport);
        let checks = vec![nanny_check(target, proto, send.clone(), expect.as_ref().map(|e| e.1.clone()), use_regex, timeout, reentry)];
        reals.push(RealServer { line: sv.line, dest, checks, quiescent: quiesce });
    }
    let fallback = sorry.map(|a| DestSpec {
        addr: IpAddr::V4(a),
        port,
        fwd,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tunnel: Tunnel::default(),
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    if !active {
        warnings.push(Diag { line, msg: format!("virtual server `{}` is not active (`active = 1` missing): not configured", v.name) });
        return Ok(None);
    }
    Ok(Some((VirtualService { line, spec, reals, fallback }, vip)))
}

/// nanny's check of one real server, as lvsd starts nanny (`-t timeout -a reentry`): every
/// `timeout` seconds a check that may take `timeout`; one failure takes the server out; back
/// after `reentry / timeout` good checks in a row (nanny's count), at least one. With no
/// send/expect on port 80, nanny sends `GET / HTTP/1.0` and expects `HTTP`; with neither on
/// another port, a TCP connection is the check.
fn nanny_check(
    target: SocketAddr,
    proto: Proto,
    send: Option<String>,
    expect: Option<String>,
    regex: bool,
    timeout: Duration,
    reentry: Duration,
) -> Check {
    let (send, expect) = match (send, expect) {
        (None, None) if target.port() == 80 && proto == Proto::Tcp => {
            (Some("GET / HTTP/1.0\r\n\r\n".to_string()), Some("HTTP".to_string()))
        }
        other => other,
    };
    let kind = if send.is_none() && expect.is_none() && proto == Proto::Tcp {
        CheckKind::Connect
    } else {
        CheckKind::SendExpect { send, expect, regex, udp: proto == Proto::Udp }
    };
    let rise = (reentry.as_secs_f64() / timeout.as_secs_f64()).floor().max(1.0) as u32;
    Check { kind, target, interval: timeout, timeout, fail_after: 1, retry_delay: timeout, rise_after: rise }
}
