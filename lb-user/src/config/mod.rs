//! Configuration files of the LVS managers lbd stands in for: ldirectord.cf, the
//! virtual_server part of keepalived.conf and piranha's lvs.cf. All parse to one [`DesiredConfig`]: the services and
//! real servers to program (as `ctl` specs) and how to check each real server.
//!
//! Anything a file asks for that lbd cannot honour is an error with its line number, and the
//! whole file is refused (lbd never starts half-configured). Text that is not configuration at
//! all is handled as the original daemon does: keepalived ignores unknown keywords (a warning
//! here too), ldirectord refuses them.
//!
//! Hand-written: no crate reads these three formats with line-numbered errors.

pub mod keepalived;
pub mod ldirectord;
pub mod piranha;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ctl::{DestSpec, ServiceSpec};

/// Which grammar a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ldirectord,
    Keepalived,
    /// piranha's /etc/sysconfig/ha/lvs.cf.
    Piranha,
    /// piranha when the file has lvs.cf's global keywords or `virtual NAME {` blocks,
    /// keepalived when it has a `virtual_server` block or braces, else ldirectord.
    Auto,
}

/// One message about a line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// Why a file was refused: every problem found, each with its line.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub errors: Vec<Diag>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: configuration refused:", self.file.display())?;
        for d in &self.errors {
            write!(f, "\n  {}:{}: {}", self.file.display(), d.line, d.msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What a health check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Connect,
    /// An HTTP or HTTPS request to the real server (ldirectord `service = http|https`,
    /// keepalived HTTP_GET/SSL_GET).
    Http(HttpCheck),
    /// ldirectord `service = simpletcp`: send `request`, the answer contains `receive`.
    SimpleTcp { request: String, receive: String },
    /// piranha's nanny: send `send` (escapes already converted) over TCP, or as one datagram
    /// when `udp`; then the first bytes of the answer are `expect` (`*`: any answer), or with
    /// `regex` the answer's first 254 bytes match it; no `expect`: the send is the check.
    /// Its own kind: nanny compares the answer's start where ldirectord's simpletcp searches it.
    SendExpect { send: Option<String>, expect: Option<String>, regex: bool, udp: bool },
    /// Runs `argv` (program, arguments) and kills it at the timeout: exit 0 is up (ldirectord
    /// `checktype = external`, keepalived MISC_CHECK). `dynamic` (keepalived `misc_dynamic`):
    /// exit 1 is down, 2..=255 up with weight `code - 2`, anything else down.
    External { argv: Vec<String>, dynamic: bool },
    /// A DNS query for `name` of type `qtype` to the target over UDP (TCP when `tcp`); up when
    /// the answer is NOERROR and, with `expect` (ldirectord's `receive`, a regular expression),
    /// some A address or PTR name of its answer section matches it.
    Dns { name: String, qtype: String, tcp: bool, expect: Option<String> },
    /// SMTP: a 2xx greeting, `HELO helo` answered 250, QUIT.
    Smtp { helo: String },
    /// keepalived UDP_CHECK: `payload` as one datagram; with `reply` an answer must come (and
    /// match it), else only an ICMP error (port unreachable...) within the timeout is down.
    Udp { payload: Vec<u8>, reply: Option<crate::health::udp::UdpReply> },
    /// ldirectord `checktype = connect` on a UDP service: ldirectord pings the real server
    /// (ICMP echo) instead; up on an echo reply.
    Ping,
    /// ldirectord `checktype = on`: always up.
    On,
    /// ldirectord `checktype = off`: always down.
    Off,
}

/// What an HTTP(S) check asks and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// `GET` or `HEAD`.
    pub method: String,
    /// Path (with its query), starting with `/`.
    pub path: String,
    /// The Host header's exact value (the virtualhost, else the server's address as the
    /// original daemon writes it).
    pub host: String,
    /// HTTPS when set.
    pub tls: Option<TlsCheck>,
    /// Accepted status codes (inclusive ranges).
    pub status: Vec<(u16, u16)>,
    /// A regular expression the body must match (or, with `regex_no_match`, must not).
    pub regex: Option<String>,
    pub regex_no_match: bool,
    /// keepalived `digest`: the body's MD5, lowercase hex.
    pub digest: Option<String>,
    /// Follow redirects (ldirectord's LWP does, up to 7; keepalived judges the first answer).
    pub follow_redirects: bool,
    /// Ask with HTTP/1.0 (keepalived's default `http_protocol`), else HTTP/1.1.
    pub http10: bool,
    /// Send `Connection: close` (keepalived's `http_protocol 1.0C` and `1.1`).
    pub connection_close: bool,
}

/// How an HTTPS check talks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCheck {
    /// The name a verified certificate must carry (the virtualhost); none: the server's IP
    /// address.
    pub server_name: Option<String>,
    /// Send `server_name` as SNI (keepalived's `enable_sni`; ldirectord: lbd's choice, yes).
    pub send_sni: bool,
    /// PEM certificates of the CAs the server's certificate must chain to; none: the
    /// certificate is not verified (keepalived's SSL_GET without `SSL { ca }`, ldirectord's
    /// https, which sets `verify_hostname => 0`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and private key presented when the server asks for a client
    /// certificate (keepalived's `SSL { certificate key }`).
    pub client_pem: Option<Vec<u8>>,
}

/// One health check of one real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    /// Where to connect.
    pub target: SocketAddr,
    /// Time between two checks of a healthy (or settled down) server.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive failures that take the server down (ldirectord `failurecount`; keepalived
    /// `retry` + 1).
    pub fail_after: u32,
    /// Time between the attempts of a failing server (ldirectord: the interval; keepalived
    /// `delay_before_retry`).
    pub retry_delay: Duration,
    /// Consecutive good checks that bring a server that was down back (piranha's `reentry`
    /// over its `timeout`); 1 for ldirectord and keepalived.
    pub rise_after: u32,
}

/// One real server: what to program when it is up, and how to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    pub line: usize,
    /// With the configured weight.
    pub dest: DestSpec,
    /// All must pass; none: always up.
    pub checks: Vec<Check>,
    /// On failure: weight 0 (true) or removal (false).
    pub quiescent: bool,
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualService {
    pub line: usize,
    pub spec: ServiceSpec,
    pub reals: Vec<RealServer>,
    /// Programmed (weight 1 unless given) only while every real server is down.
    pub fallback: Option<DestSpec>,
}

/// A whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredConfig {
    pub services: Vec<VirtualService>,
    /// Reload when the file changes (ldirectord `autoreload`).
    pub autoreload: bool,
    /// ldirectord `logfile`: messages are appended there too.
    pub logfile: Option<PathBuf>,
    /// Things accepted but worth saying (unknown keepalived keywords, lenient indentation).
    pub warnings: Vec<Diag>,
    /// lvs.cf's director pair (primary/backup, heartbeat), for [`crate::pulse`].
    pub pair: Option<piranha::Pair>,
    /// The virtual services to remove when lbd stops (SIGTERM/SIGINT): ldirectord's
    /// `cleanstop` (default yes, per service or global); keepalived and lvs.cf configurations
    /// leave the table as it is.
    pub cleanstop: Vec<crate::model::SvcKey>,
}

/// Reads and parses `path`.
pub fn load(path: &Path, format: Format) -> Result<DesiredConfig, ConfigError> {
    let text = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        errors: vec![Diag { line: 0, msg: format!("cannot read: {e}") }],
    })?;
    let text = String::from_utf8_lossy(&text);
    parse(&text, format).map_err(|errors| ConfigError { file: path.to_path_buf(), errors })
}

/// Parses configuration text.
pub fn parse(text: &str, format: Format) -> Result<DesiredConfig, Vec<Diag>> {
    let format = match format {
        Format::Auto => detect(text),
        f => f,
    };
    let cfg = match format {
        Format::Keepalived => keepalived::parse(text)?,
        Format::Piranha => piranha::parse(text)?,
        _ => ldirectord::parse(text)?,
    };
    check_unique(&cfg)?;
    Ok(cfg)
}

/// piranha when some line is one of lvs.cf's global settings (`serial_no =`, `primary =`,
/// `backup_active =`, `heartbeat_port =`) or a `virtual NAME {` block holds a `server NAME {`;
/// keepalived when some line starts with a keepalived block keyword or holds a brace.
pub fn detect(text: &str) -> Format {
    let first_words = |l: &str| {
        let mut it = l.split(|c: char| c.is_whitespace() || c == '=').filter(|w| !w.is_empty());
        (it.next().unwrap_or("").to_string(), l.contains('='), l.trim_end().ends_with('{'))
    };
    let mut virtual_block = false;
    for l in text.lines() {
        let (w, eq, brace) = first_words(l.trim_start());
        if eq && matches!(w.as_str(), "serial_no" | "primary" | "backup_active" | "heartbeat_port") {
            return Format::Piranha;
        }
        if brace && w == "virtual" {
            virtual_block = true;
        }
        if brace && w == "server" && virtual_block {
            return Format::Piranha;
        }
    }
    let keepalived = text.lines().any(|l| {
        let l = l.trim_start();
        let first = l.split_whitespace().next().unwrap_or("");
        matches!(first, "virtual_server" | "virtual_server_group" | "global_defs" | "vrrp_instance" | "real_server")
            || (!l.starts_with('#') && !l.starts_with('!') && (l.ends_with('{') || l == "}"))
    });
    if keepalived { Format::Keepalived } else { Format::Ldirectord }
}

/// Two services with one key, or one real server twice in a service, cannot be programmed.
/// A parser's result: the configuration with its warnings, or every error in line order.
fn finish(mut cfg: DesiredConfig, warnings: Vec<Diag>, mut errors: Vec<Diag>) -> Result<DesiredConfig, Vec<Diag>> {
    if errors.is_empty() {
        cfg.warnings = warnings;
        Ok(cfg)
    } else {
        errors.sort_by_key(|d| d.line);
        // One line said twice (a group's real servers are read once per member) is said once.
        errors.dedup();
        Err(errors)
    }
}

fn check_unique(cfg: &DesiredConfig) -> Result<(), Vec<Diag>> {
    let mut errors = Vec::new();
    for (i, s) in cfg.services.iter().enumerate() {
        if let Some(first) = cfg.services[..i].iter().find(|o| o.spec.key == s.spec.key) {
            errors.push(Diag { line: s.line, msg: format!("this virtual service is already defined at line {}", first.line) });
        }
        for (j, r) in s.reals.iter().enumerate() {
            if let Some(first) = s.reals[..j].iter().find(|o| o.dest.addr == r.dest.addr && o.dest.port == r.dest.port) {
                errors.push(Diag { line: r.line, msg: format!("this real server is already defined at line {}", first.line) });
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// `a.b.c.d` or an IPv6 address, optionally in brackets.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Well-known service names ldirectord and keepalived accept for ports.
pub(crate) fn port_by_name(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return Some(n);
    }
    Some(match s {
        "ftp" => 21,
        "ssh" => 22,
        "smtp" => 25,
        "domain" | "dns" => 53,
        "http" | "www" => 80,
        "pop3" | "pop" => 110,
        "nntp" => 119,
        "imap" | "imap2" => 143,
        "ldap" => 389,
        "https" => 443,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" | "pops" => 995,
        "oracle" => 1521,
        "radius" => 1812,
        "mysql" => 3306,
        "sip" => 5060,
        "pgsql" | "postgresql" => 5432,
        "http-alt" | "webcache" => 8080,
        _ => return None,
    })
}

/// A dotted IPv4 mask (`255.255.255.0`) or a prefix length, as a host-order mask.
pub(crate) fn parse_v4_mask(s: &str) -> Option<u32> {
    if let Ok(a) = s.parse::<std::net::Ipv4Addr>() {
        let m = u32::from(a);
        // Contiguous ones only.
        return (m.leading_ones() + m.trailing_zeros() == 32).then_some(m);
    }
    let n: u32 = s.parse().ok()?;
    match n {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - n)),
        _ => None,
    }
}

/// Seconds as a [`Duration`]; fractions allowed, must be positive and finite.
pub(crate) fn parse_secs(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v > 0.0 && v < 1e9).then(|| Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_protocols;
