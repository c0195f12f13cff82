//! ipvsadm's command line: its option handlers over popt's tokens ([`super::popt`]), the
//! command × option legality matrix and the semantic checks done before the kernel is asked.
//! [`parse`] turns argv into a checked [`Entry`].

use std::io::Write;
use std::net::IpAddr;

use super::command::*;
use super::format::{FMT_EXACT, FMT_NOSORT, FMT_NUMERIC, FMT_PERSISTENTCONN, FMT_RATE, FMT_STATS, FMT_THRESHOLDS, FMT_TUN_INFO};
use super::names;
use super::popt::{Popt, Tag};
use crate::model::Fwd;

/// How a parse or check ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// ipvsadm calls `exit(status)`: the whole process (and a running `-R`) ends.
    Exit(i32),
    /// `process_options` returns this status (a `-R` goes on with the next line).
    Return(i32),
}

/// `commands_v_options`: per command, per option: `+` required, `x` illegal, `1` exclusive.
const LEGAL: [&[u8; OPT_NAMES.len()]; CMD_NAMES.len()] = [
    /*   n c s s p M r f w x y m t d s r t p s s e o p b g p t s t t t n c r */
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

pub const TUN_NAMES: [&str; 3] = ["ipip", "gue", "gre"];
const TUN_OPTS: [usize; 4] = [OPTC_TUN_PORT, OPTC_TUN_NOCSUM, OPTC_TUN_CSUM, OPTC_TUN_REMCSUM];
const TUN_LEGAL: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

const MAX_TIMEOUT: i64 = 86400 * 31;
const IPVS_SVC_PERSISTENT_TIMEOUT: u32 = 6 * 60;
const DEF_SCHED: &str = "wlc";
const DEF_MCAST_IFN: &str = "eth0";

// ---------------------------------------------------------------------------------------------
// ipvsadm's parse_options / process_options checks

/// Where messages go and what the program is called.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub prog: &'a str,
}

impl Io<'_> {
    /// `fail()`: message + newline to stderr, exit status.
    pub fn fail(&mut self, status: i32, msg: &str) -> Flow {
        let _ = writeln!(self.err, "{msg}");
        Flow::Exit(status)
    }

    /// `tryhelp_exit()`.
    pub fn tryhelp(&mut self, status: i32) -> Flow {
        let p = self.prog;
        let _ = writeln!(self.err, "Try `{p} -h' or '{p} --help' for more information.");
        Flow::Exit(status)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What C's `strtol` and `atoi` skip before the digits: blanks (`isspace`) and one sign.
/// Returns whether the sign was `-` and where the digits start.
fn blanks_and_sign(s: &[u8]) -> (bool, usize) {
    let mut i = 0;
    while i < s.len() && (s[i] == b' ' || (b'\t'..=b'\r').contains(&s[i])) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    (neg, i)
}

/// strtol(s, &end, 10) accepting the whole string (leading blanks and a sign allowed).
fn strtol_full(s: &[u8]) -> Option<i64> {
    let (neg, start) = blanks_and_sign(s);
    let mut i = start;
    let mut v: i64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        match v.checked_mul(10).and_then(|x| x.checked_add(i64::from(s[i] - b'0'))) {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start || i != s.len() || overflow {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// ipvsadm's `string_to_number`.
pub fn string_to_number(s: &[u8], min: i64, max: i64) -> Option<i64> {
    strtol_full(s).filter(|n| (min..=max).contains(n))
}

/// C `atoi`.
fn atoi(s: &[u8]) -> i64 {
    let (neg, mut i) = blanks_and_sign(s);
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(s[i] - b'0'));
        i += 1;
    }
    if neg { -v } else { v }
}

/// Result of ipvsadm's `parse_service`.
pub struct Parsed {
    pub af: u16,
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// ipvsadm's `parse_service`: `host[:port]`, `[v6]:port`, bare v6; None = SERVICE_NONE.
pub fn parse_service(buf: &[u8], proto: u8) -> Option<Parsed> {
    if buf.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut host = buf;
    let mut port: Option<&[u8]> = None;
    let mut bracket = false;
    if buf.first() == Some(&b'[') {
        let inner = &buf[1..];
        let close = inner.iter().position(|&c| c == b']')?;
        if inner.get(close + 1) != Some(&b':') {
            return None;
        }
        host = &inner[..close];
        port = Some(&inner[close + 2..]);
        bracket = true;
    }
    let (af, addr) = if let Some(a6) = names::inet_pton6(host) {
        (AF_INET6, IpAddr::V6(a6))
    } else {
        // The bracket's port is only kept for IPv6; otherwise look for a colon again.
        port = None;
        if let Some(c) = host.iter().rposition(|&c| c == b':').filter(|_| !bracket) {
            port = Some(&host[c + 1..]);
            host = &host[..c];
        }
        let a4 = names::inet_aton(host).or_else(|| names::host_to_addr(host))?;
        (AF_INET, IpAddr::V4(a4))
    };
    let port = match port {
        None => None,
        Some(p) => match string_to_number(p, 0, 65535) {
            Some(n) => Some(n as u16),
            None => Some(names::service_to_port(p, proto)?),
        },
    };
    Some(Parsed { af, addr, port })
}

fn option_to_protocol(tag: Tag) -> u8 {
    match tag {
        Tag::Tcp => lb_common::IPPROTO_TCP,
        Tag::Udp => lb_common::IPPROTO_UDP,
        _ => lb_common::IPPROTO_SCTP,
    }
}

fn set_option(io: &mut Io, options: &mut u64, optc: usize) -> Result<(), Flow> {
    if *options & bit(optc) != 0 {
        return Err(io.fail(2, &format!("multiple '{}' options specified", OPT_NAMES[optc])));
    }
    *options |= bit(optc);
    Ok(())
}

fn parse_timeout(io: &mut Io, buf: Option<&[u8]>, min: i64, max: i64) -> Result<u32, Flow> {
    let Some(buf) = buf else {
        return Ok(IPVS_SVC_PERSISTENT_TIMEOUT);
    };
    match string_to_number(buf, min, max) {
        Some(n) => Ok(n as u32),
        None => Err(io.fail(2, &format!("invalid timeout value `{}' specified", lossy(buf)))),
    }
}

fn parse_sched_flags(io: &mut Io, sched: &str, arg: &[u8]) -> Result<u32, Flow> {
    let sched = if sched.is_empty() { DEF_SCHED } else { sched };
    let mut flags = 0;
    let mut any = false;
    for flag in arg.split(|&c| c == b',').filter(|f| !f.is_empty()) {
        any = true;
        let (bits, only) = match flag {
            b"flag-1" => (lb_common::SVC_F_SCHED1, None),
            b"flag-2" => (lb_common::SVC_F_SCHED2, None),
            b"flag-3" => (lb_common::SVC_F_SCHED3, None),
            b"sh-fallback" => (lb_common::SVC_F_SCHED1, Some("sh")),
            b"sh-port" => (lb_common::SVC_F_SCHED2, Some("sh")),
            b"mh-fallback" => (lb_common::SVC_F_SCHED1, Some("mh")),
            b"mh-port" => (lb_common::SVC_F_SCHED2, Some("mh")),
            _ => return Err(io.fail(2, &format!("invalid scheduler flag `{}'", lossy(flag)))),
        };
        flags |= bits;
        if only.is_some_and(|s| s != sched) {
            return Err(io.fail(2, &format!("incompatible scheduler flag `{}'", lossy(flag))));
        }
    }
    if !any {
        // ipvsadm dereferences a NULL token here (crash); report it as an invalid flag.
        return Err(io.fail(2, "invalid scheduler flag `'"));
    }
    Ok(flags)
}

/// Copies at most `n` bytes (strncpy into a fixed buffer).
fn clipped(b: &[u8], n: usize) -> String {
    lossy(&b[..b.len().min(n)])
}

/// `parse_options` + the checks of `process_options` up to the kernel call. `argv[0]` is the
/// program name. The steps, in ipvsadm's order: the command (the first option), every other
/// option, the leftover arguments, the scheduler flags, then the legality and semantic checks.
pub fn parse(argv: &[Vec<u8>], io: &mut Io) -> Result<Entry, Flow> {
    let mut e = initial_entry();
    let mut popt = Popt::new(argv);
    e.cmd = resolve_command(&mut popt, &mut e, io)?;
    let sched_flags_arg = scan_options(&mut popt, &mut e, io)?;
    take_leftovers(&mut popt, &mut e, io)?;
    if !sched_flags_arg.is_empty() {
        e.svc.flags &= !(lb_common::SVC_F_SCHED1 | lb_common::SVC_F_SCHED2 | lb_common::SVC_F_SCHED3);
        e.svc.flags |= parse_sched_flags(io, &e.svc.sched, &sched_flags_arg)?;
    }
    check(&mut e, io)?;
    Ok(e)
}

/// The command entry as `parse_options` starts it (ipvsadm's defaults: weight 1, direct
/// routing, an all-ones IPv4 mask).
fn initial_entry() -> Entry {
    Entry {
        cmd: Cmd::List,
        options: 0,
        format: 0,
        svc: SvcArg {
            af: AF_UNSPEC,
            protocol: 0,
            addr: None,
            port: 0,
            fwmark: 0,
            sched: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: String::new(),
        },
        dest: DestArg {
            af: AF_UNSPEC,
            addr: None,
            port: 0,
            fwd: Fwd::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
        },
        timeouts: [0; 3],
        daemon: DaemonArg::default(),
    }
}

/// The first option names the command (ipvsadm's first `poptGetNextOpt`): `-h` and `-v` answer
/// here and exit; `--start-daemon`/`--stop-daemon` take their `master|backup` argument.
fn resolve_command(popt: &mut Popt, e: &mut Entry, io: &mut Io) -> Result<Cmd, Flow> {
    let (tag, val) = match popt.next_opt() {
        Ok(Some(o)) => o,
        _ => return Err(io.tryhelp(255)),
    };
    Ok(match tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DelService => Cmd::Del,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DelServer => Cmd::DelDest,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::StartDaemon | Tag::StopDaemon => {
            let start = tag == Tag::StartDaemon;
            match val.as_deref() {
                Some(b"master") => e.daemon.master = true,
                Some(b"backup") => e.daemon.master = false,
                _ if start => return Err(io.fail(2, "illegal start-daemon parameter specified")),
                _ => return Err(io.fail(2, "illegal start_daemon specified")),
            }
            if start { Cmd::StartDaemon } else { Cmd::StopDaemon }
        }
        Tag::Help => {
            super::format::usage(io.out, io.prog);
            return Err(Flow::Exit(0));
        }
        Tag::Version => {
            super::format::version(io.out);
            return Err(Flow::Exit(0));
        }
        _ => return Err(io.tryhelp(255)),
    })
}

/// The options after the command, each applied in turn ([`apply_option`]); popt's errors
/// end the parse with `process_options` returning -1. Returns `-b`'s argument (applied once the
/// scheduler is known).
fn scan_options(popt: &mut Popt, e: &mut Entry, io: &mut Io) -> Result<Vec<u8>, Flow> {
    let mut sched_flags_arg: Vec<u8> = Vec::new();
    loop {
        let (tag, val) = match popt.next_opt() {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(sched_flags_arg),
            Err(pe) => {
                let _ = writeln!(io.err, "{}: {}", popt.bad_option(), pe.text());
                return Err(Flow::Return(-1));
            }
        };
        apply_option(e, io, popt, tag, val.as_deref(), &mut sched_flags_arg)?;
    }
}

/// Options that only set their bit and, for a listing, a format flag.
const FLAG_OPTIONS: [(Tag, usize, u32); 12] = [
    (Tag::Connection, OPTC_CONNECTION, 0),
    (Tag::Numeric, OPTC_NUMERIC, FMT_NUMERIC),
    (Tag::Timeout, OPTC_TIMEOUT, 0),
    (Tag::Daemon, OPTC_DAEMON, 0),
    (Tag::Stats, OPTC_STATS, FMT_STATS),
    (Tag::Rate, OPTC_RATE, FMT_RATE),
    (Tag::Thresholds, OPTC_THRESHOLDS, FMT_THRESHOLDS),
    (Tag::PersistentConn, OPTC_PERSISTENTCONN, FMT_PERSISTENTCONN),
    (Tag::NoSort, OPTC_NOSORT, FMT_NOSORT),
    (Tag::Exact, OPTC_EXACT, FMT_EXACT),
    (Tag::TunInfo, OPTC_TUN_INFO, FMT_TUN_INFO),
    (Tag::TunNocsum, OPTC_TUN_NOCSUM, 0),
];

/// An option whose argument is a number in `min..=max` (ipvsadm's `string_to_number`): its
/// bit, the range, the message it fails with, and where the number goes.
type NumberOption = (Tag, usize, i64, i64, &'static str, Option<fn(&mut Entry, i64)>);

const NUMBER_OPTIONS: [NumberOption; 8] = [
    (Tag::Weight, OPTC_WEIGHT, 0, i32::MAX as i64, "illegal weight specified", Some(|e, n| e.dest.weight = n as i32)),
    (Tag::UThreshold, OPTC_UTHRESHOLD, 0, i32::MAX as i64, "illegal u_threshold specified", Some(|e, n| e.dest.u_threshold = n as u32)),
    (Tag::LThreshold, OPTC_LTHRESHOLD, 0, i32::MAX as i64, "illegal l_threshold specified", Some(|e, n| e.dest.l_threshold = n as u32)),
    (Tag::SyncId, OPTC_SYNCID, 0, 255, "illegal syncid specified", Some(|e, n| e.daemon.syncid = n as u32)),
    (Tag::McastPort, OPTC_MCAST_PORT, 1, 65535, "illegal mcast-port specified", Some(|e, n| e.daemon.port = n as u16)),
    (Tag::McastTtl, OPTC_MCAST_TTL, 1, 255, "illegal mcast-ttl specified", Some(|e, n| e.daemon.ttl = n as u8)),
    (Tag::SyncMaxlen, OPTC_SYNC_MAXLEN, 1, 65535 - 20 - 8, "illegal sync-maxlen specified", Some(|e, n| e.daemon.maxlen = n as u32)),
    (Tag::TunPort, OPTC_TUN_PORT, 1, 65535, "illegal tunnel port specified", Some(|e, n| e.dest.tun_port = n as u16)),
];

/// One option after the command (ipvsadm's `parse_options` switch): sets its bit (a second
/// one is an error) and its part of the entry. A command here is an invalid option, named by
/// popt's last word.
fn apply_option(e: &mut Entry, io: &mut Io, popt: &Popt, tag: Tag, val: Option<&[u8]>, sched_flags_arg: &mut Vec<u8>) -> Result<(), Flow> {
    if let Some(&(_, optc, fmt)) = FLAG_OPTIONS.iter().find(|f| f.0 == tag) {
        set_option(io, &mut e.options, optc)?;
        e.format |= fmt;
        return Ok(());
    }
    let arg: &[u8] = val.unwrap_or_default();
    if let Some(&(_, optc, min, max, error, set)) = NUMBER_OPTIONS.iter().find(|o| o.0 == tag) {
        set_option(io, &mut e.options, optc)?;
        let Some(n) = string_to_number(arg, min, max) else {
            return Err(io.fail(2, error));
        };
        if let Some(set) = set {
            set(e, n);
        }
        return Ok(());
    }
    match tag {
        Tag::Tcp | Tag::Udp | Tag::Sctp => virtual_service(e, io, tag, arg)?,
        Tag::Fwmark => fwmark_service(e, io, arg)?,
        Tag::Ipv6 => {
            if e.svc.fwmark == 0 {
                return Err(io.fail(2, "-6 used before -f\n"));
            }
            e.svc.af = AF_INET6;
            e.svc.netmask = 128;
        }
        Tag::Netmask => netmask(e, io, arg)?,
        Tag::Scheduler => {
            set_option(io, &mut e.options, OPTC_SCHEDULER)?;
            e.svc.sched = clipped(arg, 15);
        }
        Tag::Persistent => {
            set_option(io, &mut e.options, OPTC_PERSISTENT)?;
            e.svc.flags |= lb_common::SVC_F_PERSISTENT;
            e.svc.timeout = parse_timeout(io, val, 1, MAX_TIMEOUT)?;
        }
        Tag::Ops => {
            set_option(io, &mut e.options, OPTC_ONEPACKET)?;
            e.svc.flags |= lb_common::SVC_F_ONEPACKET;
        }
        Tag::Pe => {
            set_option(io, &mut e.options, OPTC_PE)?;
            e.svc.pe_name = clipped(arg, 32);
        }
        Tag::SchedFlags => {
            set_option(io, &mut e.options, OPTC_SCHED_FLAGS)?;
            *sched_flags_arg = arg[..arg.len().min(127)].to_vec();
        }
        Tag::RealServer => {
            set_option(io, &mut e.options, OPTC_SERVER)?;
            let Some(p) = parse_service(arg, e.svc.protocol) else {
                return Err(io.fail(2, "illegal real server address[:port] specified"));
            };
            e.dest.af = p.af;
            e.dest.addr = Some(p.addr);
            e.dest.port = p.port.unwrap_or(e.svc.port);
        }
        Tag::Ipip | Tag::Gatewaying | Tag::Masq => {
            set_option(io, &mut e.options, OPTC_FORWARD)?;
            e.dest.fwd = match tag {
                Tag::Ipip => Fwd::Tunnel,
                Tag::Gatewaying => Fwd::Route,
                _ => Fwd::Masq,
            };
        }
        Tag::TunType => {
            set_option(io, &mut e.options, OPTC_TUN_TYPE)?;
            match TUN_NAMES.iter().position(|n| n.as_bytes() == arg) {
                Some(t) => e.dest.tun_type = t as u8,
                None => return Err(io.fail(2, "illegal tunnel type specified")),
            }
        }
        Tag::TunCsum => {
            set_option(io, &mut e.options, OPTC_TUN_CSUM)?;
            e.dest.tun_flags |= 1;
        }
        Tag::TunRemcsum => {
            set_option(io, &mut e.options, OPTC_TUN_REMCSUM)?;
            e.dest.tun_flags |= 2;
        }
        Tag::McastInterface => {
            set_option(io, &mut e.options, OPTC_MCAST)?;
            e.daemon.mcast_ifn = clipped(arg, 15);
        }
        Tag::McastGroup => {
            set_option(io, &mut e.options, OPTC_MCAST_GROUP)?;
            e.daemon.group = Some(if arg.contains(&b':') {
                match names::inet_pton6(arg) {
                    Some(a) if a.is_multicast() => IpAddr::V6(a),
                    _ => return Err(io.fail(2, &format!("invalid IPv6 mcast-group `{}'", lossy(arg)))),
                }
            } else {
                match names::inet_pton4(arg) {
                    Some(a) if a.is_multicast() => IpAddr::V4(a),
                    _ => return Err(io.fail(2, &format!("invalid IPv4 mcast-group `{}'", lossy(arg)))),
                }
            });
        }
        Tag::Sort => {}
        _ => return Err(io.fail(2, &format!("invalid option `{}'", popt.bad_option()))),
    }
    Ok(())
}

/// `-t/-u/--sctp-service host[:port]`.
fn virtual_service(e: &mut Entry, io: &mut Io, tag: Tag, arg: &[u8]) -> Result<(), Flow> {
    set_option(io, &mut e.options, OPTC_SERVICE)?;
    e.svc.protocol = option_to_protocol(tag);
    let Some(p) = parse_service(arg, e.svc.protocol) else {
        return Err(io.fail(2, "illegal virtual server address[:port] specified"));
    };
    e.svc.af = p.af;
    e.svc.addr = Some(p.addr);
    if p.af == AF_INET6 {
        e.svc.netmask = 128;
    }
    if let Some(port) = p.port {
        e.svc.port = port;
    }
    Ok(())
}

/// `-f mark`.
fn fwmark_service(e: &mut Entry, io: &mut Io, arg: &[u8]) -> Result<(), Flow> {
    set_option(io, &mut e.options, OPTC_SERVICE)?;
    e.svc.af = AF_INET;
    e.svc.protocol = lb_common::IPPROTO_TCP;
    match strtol_full(arg) {
        Some(n) if n > 0 && n <= i64::from(u32::MAX) => e.svc.fwmark = n as u32,
        _ => return Err(io.fail(2, &format!("invalid fwmark value `{}' specified", lossy(arg)))),
    }
    Ok(())
}

/// `-M`: an IPv4 mask (address or host name) or, once the service is IPv6, a prefix length.
fn netmask(e: &mut Entry, io: &mut Io, arg: &[u8]) -> Result<(), Flow> {
    set_option(io, &mut e.options, OPTC_NETMASK)?;
    if e.svc.af != AF_INET6 {
        match names::inet_aton(arg).or_else(|| names::host_to_addr(arg)) {
            Some(m) => e.svc.netmask = u32::from(m),
            None => return Err(io.fail(2, "illegal virtual server persistent mask specified")),
        }
    } else {
        let n = atoi(arg);
        if !(1..=128).contains(&n) {
            return Err(io.fail(2, "illegal ipv6 netmask specified"));
        }
        e.svc.netmask = n as u32;
    }
    Ok(())
}

/// popt's leftover arguments: `--set`'s three timeouts; any other is an error.
fn take_leftovers(popt: &mut Popt, e: &mut Entry, io: &mut Io) -> Result<(), Flow> {
    if e.cmd == Cmd::Timeout {
        let a = popt.get_arg();
        let b = popt.get_arg();
        let c = popt.get_arg();
        match (a, b, c) {
            (Some(a), Some(b), Some(c)) => {
                e.timeouts = [
                    parse_timeout(io, Some(&a), 0, MAX_TIMEOUT)?,
                    parse_timeout(io, Some(&b), 0, MAX_TIMEOUT)?,
                    parse_timeout(io, Some(&c), 0, MAX_TIMEOUT)?,
                ];
            }
            _ => return Err(io.fail(2, "--set option requires 3 timeout values")),
        }
    }
    if let Some(extra) = popt.get_arg() {
        return Err(io.fail(2, &format!("unexpected argument {}", lossy(&extra))));
    }
    Ok(())
}

/// ipvsadm's option legality tables (commands, tunnel types): `rules` pairs an option with
/// '+' (required), 'x' (illegal) or '1' (at most one of the '1' options); `subject` names the
/// command or tunnel type in the messages.
fn check_legal(e: &Entry, io: &mut Io, rules: impl Iterator<Item = (usize, u8)>, subject: &str) -> Result<(), Flow> {
    let mut last: Option<usize> = None;
    for (k, rule) in rules {
        if !e.has(k) {
            if rule == b'+' {
                let msg = format!("You need to supply the '{}' option for the {subject}", OPT_NAMES[k]);
                return Err(io.fail(2, &msg));
            }
        } else if rule == b'x' {
            let msg = format!("Illegal '{}' option with the {subject}", OPT_NAMES[k]);
            return Err(io.fail(2, &msg));
        } else if rule == b'1' {
            if let Some(l) = last {
                let msg = format!("The option '{}' conflicts with the '{}' option in the {subject}", OPT_NAMES[k], OPT_NAMES[l]);
                return Err(io.fail(2, &msg));
            }
            last = Some(k);
        }
    }
    Ok(())
}

/// `generic_opt_check` and the checks/defaults of `process_options` before the kernel call.
fn check(e: &mut Entry, io: &mut Io) -> Result<(), Flow> {
    let ci = e.cmd as usize;
    let subject = format!("'{}' command", CMD_NAMES[ci]);
    check_legal(e, io, LEGAL[ci].iter().enumerate().map(|(j, &rule)| (j, rule)), &subject)?;

    if matches!(e.cmd, Cmd::Add | Cmd::Edit) {
        let persistent = e.svc.flags & lb_common::SVC_F_PERSISTENT != 0;
        if e.svc.fwmark == 0 && e.svc.port == 0 && !persistent {
            return Err(io.fail(2, "Zero port specified for non-persistent service"));
        }
        if e.svc.flags & lb_common::SVC_F_ONEPACKET != 0
            && e.svc.fwmark == 0
            && e.svc.protocol != lb_common::IPPROTO_UDP
        {
            return Err(io.fail(2, "One-Packet Scheduling is only for UDP virtual services"));
        }
        if e.svc.sched.is_empty() {
            e.svc.sched = DEF_SCHED.to_string();
        }
    }
    if e.cmd == Cmd::StartDaemon && e.daemon.mcast_ifn.is_empty() {
        e.daemon.mcast_ifn = DEF_MCAST_IFN.to_string();
    }
    if matches!(e.cmd, Cmd::AddDest | Cmd::EditDest) {
        if e.svc.fwmark == 0 && matches!(e.dest.fwd, Fwd::Tunnel | Fwd::Route) {
            e.dest.port = e.svc.port;
        }
        if e.dest.af != e.svc.af && e.dest.fwd != Fwd::Tunnel {
            return Err(io.fail(2, "Different address family is allowed only for tunneling servers"));
        }
        let tun_opts = bit(OPTC_TUN_TYPE)
            | bit(OPTC_TUN_PORT)
            | bit(OPTC_TUN_NOCSUM)
            | bit(OPTC_TUN_CSUM)
            | bit(OPTC_TUN_REMCSUM);
        if e.options & tun_opts != 0 && e.dest.fwd != Fwd::Tunnel {
            return Err(io.fail(2, "Tunnel options conflict with forward method"));
        }
        let t = usize::from(e.dest.tun_type).min(TUN_LEGAL.len() - 1);
        let subject = format!("'{}' tunnel type", TUN_NAMES[t]);
        check_legal(e, io, TUN_OPTS.iter().enumerate().map(|(j, &k)| (k, TUN_LEGAL[t][j])), &subject)?;
    }
    if e.cmd == Cmd::List {
        let a = bit(OPTC_CONNECTION) | bit(OPTC_TIMEOUT) | bit(OPTC_DAEMON);
        let b = bit(OPTC_STATS) | bit(OPTC_RATE) | bit(OPTC_THRESHOLDS);
        let c = bit(OPTC_TIMEOUT) | bit(OPTC_DAEMON);
        if (e.options & a != 0 && e.options & b != 0) || (e.options & c != 0 && e.has(OPTC_PERSISTENTCONN)) {
            return Err(io.fail(2, "options conflicts in the list command"));
        }
    }
    Ok(())
}
