//! The recorded invocations of the real ipvsadm 1.31 (`tests/golden/ipvsadm`, and the malformed
//! corpus made from them) that lbadm answers differently on purpose, each with its reason: the
//! one skip list of every replay (lb-user's in memory, xlb-tests' on the binary and its
//! malformed corpus). A skipped step is still run (the table keeps its course); only the
//! comparison is left out.
//!
//! Deliberate differences:
//! - no connection sync daemon (`--start-daemon` fails by design);
//! - twos exists (as in kernels from 6.2 on), the 6.1 recording's kernel has none;
//! - IPv6 services and real servers and `--tun-type gue|gre` are refused ([`UNBUILT`]): the
//!   invocations that name them, and then only the invocations whose answer depends on what
//!   was refused (listings of the table or of a service that lost a real server, commands on a
//!   refused real server), until a flush makes both tables equal again. Argument errors
//!   (ipvsadm's own checks, made before the kernel is asked) still compare.

use std::net::IpAddr;

use super::cli::{self, Io};
use super::command::{self, Cmd, Entry};

/// Why IPv6 and GUE/GRE invocations are not compared.
pub const UNBUILT: &str = "IPv6 / GUE / GRE refused until the data plane carries them (issue 15)";
const NO_SYNC: &str = "no connection sync daemon in xlb (--start-daemon fails by design)";
const TWOS: &str = "twos: the 6.1 recording's kernel has no ip_vs_twos (compared on 6.12 instead)";

/// A service as a command names it: (af, protocol, address, port, fwmark).
type SvcId = (u16, u8, Option<IpAddr>, u16, u32);

fn svc_id(e: &Entry) -> SvcId {
    (e.svc.af, e.svc.protocol, e.svc.addr, e.svc.port, e.svc.fwmark)
}

/// Whether an invocation names what the data plane does not carry yet.
fn unbuilt(e: &Entry) -> bool {
    let v6 = |a: Option<IpAddr>| a.is_some_and(|a| a.is_ipv6());
    let dest_cmd = matches!(e.cmd, Cmd::AddDest | Cmd::EditDest | Cmd::DelDest);
    e.svc.af == command::AF_INET6 || v6(e.svc.addr) || (dest_cmd && (v6(e.dest.addr) || e.dest.tun_type != 0))
}

/// The skips of one recorded case, fed its steps in order ([`CaseSkips::step`]).
pub struct CaseSkips {
    stem: String,
    case: String,
    /// Services the recording's table got and this one refused.
    refused_svcs: Vec<SvcId>,
    /// Real servers the recording's table got (or changed) and this one refused.
    refused_dests: Vec<(SvcId, Option<IpAddr>, u16)>,
}

impl CaseSkips {
    pub fn new(stem: &str, case: &str) -> CaseSkips {
        CaseSkips { stem: stem.to_string(), case: case.to_string(), refused_svcs: Vec::new(), refused_dests: Vec::new() }
    }

    /// Why the recorded step `ipvsadm ARGV` (without argv[0]) with `stdin`, which answered
    /// `status`/`stdout`, is not compared; `None`: compare it.
    pub fn step(&mut self, argv: &[String], stdin: Option<&str>, status: i32, stdout: &str) -> Option<&'static str> {
        if let Some(r) = self.fixed(argv, status, stdout) {
            return Some(r);
        }
        let words: Vec<Vec<u8>> =
            std::iter::once(b"ipvsadm".to_vec()).chain(argv.iter().map(|a| a.as_bytes().to_vec())).collect();
        if words.len() == 1 {
            // No arguments: the whole table is listed.
            return self.diverged().then_some(UNBUILT);
        }
        let e = parse(&words)?;
        if e.cmd != Cmd::Restore {
            return self.entry(&e, status == 0).then_some(UNBUILT);
        }
        // -R: every line up to the first that ipvsadm itself refuses (which ends the restore).
        let mut input = stdin.unwrap_or("").as_bytes();
        let mut affected = false;
        while let Some(line) = super::restore::read_argv(&mut input, b"ipvsadm") {
            if line.len() <= 1 {
                continue;
            }
            match parse(&line) {
                Some(le) if le.cmd != Cmd::Restore => affected |= self.entry(&le, true),
                _ => break,
            }
        }
        affected.then_some(UNBUILT)
    }

    /// The rules that do not depend on the case's course.
    fn fixed(&self, argv: &[String], status: i32, stdout: &str) -> Option<&'static str> {
        let has = |w: &str| argv.iter().any(|a| a == w);
        if self.stem == "commands" && self.case == "sched-twos" {
            // xlb has twos, as kernels from 6.2 on do; twos-6.12.json is this case on 6.12.
            return Some(TWOS);
        }
        if self.stem == "commands" && self.case == "sync-daemon" {
            // A daemon that starts, stops, or shows up in `-L --daemon`; argument errors still
            // compare, and so do the listings and stops when no daemon runs.
            let arg_error = status == 2;
            if has("--start-daemon") && !arg_error {
                return Some(NO_SYNC);
            }
            if has("--stop-daemon") && status == 0 {
                return Some(NO_SYNC);
            }
            if has("--daemon") && !stdout.is_empty() {
                return Some(NO_SYNC);
            }
        }
        None
    }

    fn diverged(&self) -> bool {
        !self.refused_svcs.is_empty() || !self.refused_dests.is_empty()
    }

    /// Whether the answer to one command (run alone or as a -R line) can differ; `accepted`:
    /// the recording's table took it. Keeps track of what the recording has and xlb refused.
    fn entry(&mut self, e: &Entry, accepted: bool) -> bool {
        let svc = svc_id(e);
        if unbuilt(e) {
            if accepted {
                match e.cmd {
                    Cmd::Add | Cmd::Edit => self.refused_svcs.push(svc),
                    Cmd::AddDest | Cmd::EditDest => self.refused_dests.push((svc, e.dest.addr, e.dest.port)),
                    _ => {}
                }
            }
            return true;
        }
        let dest_refused = self.refused_dests.iter().any(|(s, a, p)| *s == svc && *a == e.dest.addr && *p == e.dest.port);
        match e.cmd {
            Cmd::Flush => {
                self.refused_svcs.clear();
                self.refused_dests.clear();
                false
            }
            Cmd::Del => {
                // Both tables lose the service (xlb's never had the refused real servers).
                self.refused_dests.retain(|(s, _, _)| *s != svc);
                false
            }
            Cmd::AddDest | Cmd::EditDest => dest_refused,
            Cmd::DelDest => {
                if dest_refused && accepted {
                    self.refused_dests.retain(|(s, a, p)| !(*s == svc && *a == e.dest.addr && *p == e.dest.port));
                }
                dest_refused
            }
            Cmd::List if e.has(command::OPTC_CONNECTION) || e.has(command::OPTC_TIMEOUT) || e.has(command::OPTC_DAEMON) => false,
            Cmd::List if e.has(command::OPTC_SERVICE) => {
                self.refused_svcs.contains(&svc) || self.refused_dests.iter().any(|(s, _, _)| *s == svc)
            }
            Cmd::List | Cmd::Save => self.diverged(),
            _ => false,
        }
    }
}

/// lbadm's own reading of an argv (with argv[0]); `None` when ipvsadm refuses it itself.
fn parse(words: &[Vec<u8>]) -> Option<Entry> {
    let (mut out, mut err) = (std::io::sink(), std::io::sink());
    let mut io = Io { out: &mut out, err: &mut err, prog: "ipvsadm" };
    cli::parse(words, &mut io).ok()
}
